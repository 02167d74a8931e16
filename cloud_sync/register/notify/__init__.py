"""Notifications: contacts, escalation policies, alarms and the durable, exactly-once dispatch of their steps.

Modules: :mod:`.schema` (tables), :mod:`.policy` (escalation policy and defaults), :mod:`.alarms` (opening,
planning and acknowledging alarms), :mod:`.dispatch` (the job worker), :mod:`.twilio` and :mod:`.email`
(provider adapters), :mod:`.links` (signed acknowledgement links), :mod:`.routes` (the HTTP router) and
:mod:`.desk` (the operator's alarm desk).
"""
