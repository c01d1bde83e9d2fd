"""Orchestration over the ports: fetch a day, stage an input, build days, deliver alerts, replay,
report status. Services import the domain and `shared.ports`, never an adapter."""
