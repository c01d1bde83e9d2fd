"""Trigger glue only: parse the trigger, call a service in `shared/`, settle.

Settling follows the Service Bus trigger's auto-complete: returning completes the message,
raising abandons it, so Service Bus redelivers it and, after the queue's maximum delivery
count, dead-letters it to `alerts`.
"""
