"""Support storage: tickets, orders, feedback and the ticket outbox (SQLAlchemy; see ``db.py``)."""
