"""The pipeline's rules, pure: no I/O, no SDKs, nothing outside the standard library.

What a valid record or CRM row is, which days a change affects, the quality gate, what an
alert carries, how Event Grid announces a blob. Services apply these rules over the ports;
tests exercise them directly.
"""
