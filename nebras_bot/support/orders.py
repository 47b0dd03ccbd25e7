"""Orders: lookups for order status, cancellation and refund flows, and ``nebras db seed``."""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Dict, List, Optional

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from nebras_bot.support import db
from nebras_bot.support.settings import SupportSettings
from nebras_bot.support.validation import normalise_order_id

PROCESSING, SHIPPED, DELIVERED, CANCELLED, RETURNED = "processing", "shipped", "delivered", "cancelled", "returned"
CANCELLABLE = (PROCESSING,)
REFUND_NONE, REFUND_PENDING, REFUND_APPROVED, REFUND_PAID, REFUND_REJECTED = (
    None, "pending", "approved", "paid", "rejected",
)

# Outcomes of OrderStore.cancel()
CANCEL_DONE, CANCEL_ALREADY, CANCEL_TOO_LATE, CANCEL_NOT_FOUND = "cancelled", "already_cancelled", "too_late", "not_found"


@dataclass
class Order:
    order_id: str
    email: str
    customer_name: str
    items: List[Dict[str, Any]]
    total_cents: int
    currency: str
    status: str
    placed_at: datetime
    estimated_delivery: Optional[date]
    delivery_city: Optional[str]
    delivery_country: Optional[str]
    carrier: Optional[str]
    tracking_number: Optional[str]
    refund_status: Optional[str]
    refund_cents: Optional[int]
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> "Order":
        data = dict(row._mapping)
        data["items"] = json.loads(data["items"])
        return cls(**data)

    @property
    def total(self) -> Decimal:
        return Decimal(self.total_cents) / 100

    @property
    def refund_amount(self) -> Optional[Decimal]:
        return None if self.refund_cents is None else Decimal(self.refund_cents) / 100


class OrderStore:
    def __init__(self, engine: Optional[Engine] = None, settings: Optional[SupportSettings] = None):
        self.settings = settings or SupportSettings()
        self.engine = engine or db.connect(settings=self.settings)

    def get(self, order_id: Optional[str]) -> Optional[Order]:
        normalised = normalise_order_id(order_id)
        if normalised is None:
            return None
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(db.orders).where(db.orders.c.order_id == normalised)).first()
        return Order.from_row(row) if row else None

    def cancel(self, order_id: str) -> tuple[str, Optional[Order]]:
        """Cancel an order that has not shipped yet; returns ``(outcome, order)``."""
        order = self.get(order_id)
        if order is None:
            return CANCEL_NOT_FOUND, None
        if order.status == CANCELLED:
            return CANCEL_ALREADY, order
        if order.status not in CANCELLABLE:
            return CANCEL_TOO_LATE, order
        for attempt in db.retrying(self.settings):
            with attempt:
                with self.engine.begin() as connection:
                    connection.execute(
                        db.orders.update()
                        .where(db.orders.c.order_id == order.order_id, db.orders.c.status.in_(CANCELLABLE))
                        .values(status=CANCELLED, refund_status=REFUND_PENDING, refund_cents=order.total_cents,
                                updated_at=db.utcnow())
                    )
        return CANCEL_DONE, self.get(order.order_id)

    def count(self) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(sa.select(sa.func.count()).select_from(db.orders)).scalar())

    def upsert_many(self, rows: List[Dict[str, Any]]) -> int:
        """Insert rows whose order id is not stored yet; returns how many were inserted."""
        inserted = 0
        with self.engine.begin() as connection:
            existing = set(connection.execute(sa.select(db.orders.c.order_id)).scalars())
            for row in rows:
                if row["order_id"] not in existing:
                    connection.execute(db.orders.insert().values(**row))
                    inserted += 1
        return inserted


# --- seed data ---------------------------------------------------------------------------------
# Bitext's most frequent order numbers are included so that its example messages find real orders.
BITEXT_ORDER_IDS = ("370795561790", "732201349959", "4587345", "123842", "113542617735902")
_FIRST = ("Amira", "Omar", "Lena", "Jonas", "Sofia", "Mateo", "Yuki", "Priya", "Liam", "Fatima", "Noah", "Chloe",
          "Karim", "Elena", "David", "Aisha")
_LAST = ("Haddad", "Schmidt", "Rossi", "Tanaka", "Sharma", "Murphy", "Benali", "Dubois", "Novak", "Garcia")
_PLACES = (("Berlin", "Germany", "EUR"), ("Lyon", "France", "EUR"), ("Madrid", "Spain", "EUR"),
           ("Dubai", "United Arab Emirates", "AED"), ("London", "United Kingdom", "GBP"),
           ("Toronto", "Canada", "CAD"), ("Austin", "United States", "USD"), ("Dublin", "Ireland", "EUR"),
           ("Amsterdam", "Netherlands", "EUR"), ("Milan", "Italy", "EUR"))
_PRODUCTS = (("Wireless headphones", "59.90"), ("Running shoes", "89.00"), ("Coffee grinder", "45.50"),
             ("Laptop sleeve 14in", "24.99"), ("Yoga mat", "29.00"), ("Smart watch strap", "15.00"),
             ("Desk lamp", "39.95"), ("Backpack 30L", "74.00"), ("Phone case", "12.49"),
             ("Bluetooth speaker", "49.00"), ("Water bottle", "18.00"), ("Cotton t-shirt", "19.90"))
_CARRIERS = ("DHL", "UPS", "FedEx", "La Poste", "Aramex")
_STATUSES = (PROCESSING, PROCESSING, SHIPPED, SHIPPED, DELIVERED, DELIVERED, DELIVERED, CANCELLED, RETURNED)


def seed_rows(count: int = 40, seed: int = 7, today: Optional[date] = None) -> List[Dict[str, Any]]:
    """Deterministic, realistic orders (status mix, refunds for cancelled/returned ones)."""
    rng = random.Random(seed)
    today = today or date.today()
    ids = list(BITEXT_ORDER_IDS) + [str(rng.randint(10**7, 10**9)) for _ in range(max(0, count - len(BITEXT_ORDER_IDS)))]
    rows = []
    for index, order_id in enumerate(ids[:count]):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        city, country, currency = rng.choice(_PLACES)
        items = [{"name": name, "quantity": rng.randint(1, 2), "unit_price": price}
                 for name, price in rng.sample(_PRODUCTS, rng.randint(1, 3))]
        total = sum(Decimal(i["unit_price"]) * i["quantity"] for i in items)
        status = _STATUSES[index % len(_STATUSES)] if index >= 5 else (PROCESSING, SHIPPED, DELIVERED, CANCELLED, RETURNED)[index]
        age_days = {PROCESSING: rng.randint(0, 1), SHIPPED: rng.randint(1, 3)}.get(status, rng.randint(8, 30))
        placed = datetime.combine(today - timedelta(days=age_days), datetime.min.time()) + timedelta(
            minutes=rng.randint(0, 1439))
        refund_status, refund_amount = None, None
        if status == CANCELLED:
            refund_status, refund_amount = rng.choice((REFUND_PENDING, REFUND_PAID)), total
        elif status == RETURNED:
            refund_status, refund_amount = rng.choice((REFUND_APPROVED, REFUND_PAID, REFUND_REJECTED)), total
        rows.append({
            "order_id": order_id,
            "email": f"{first}.{last}@example.com".lower(),
            "customer_name": f"{first} {last}",
            "items": json.dumps(items),
            "total_cents": int(total * 100),
            "currency": currency,
            "status": status,
            "placed_at": placed,
            "estimated_delivery": (placed + timedelta(days=rng.randint(3, 7))).date(),
            "delivery_city": city,
            "delivery_country": country,
            "carrier": rng.choice(_CARRIERS) if status in (SHIPPED, DELIVERED, RETURNED) else None,
            "tracking_number": f"{rng.randint(10**11, 10**12 - 1)}" if status in (SHIPPED, DELIVERED, RETURNED) else None,
            "refund_status": refund_status,
            "refund_cents": int(refund_amount * 100) if refund_amount is not None else None,
            "updated_at": placed,
        })
    return rows


def seed(store: Optional[OrderStore] = None, count: int = 40) -> int:
    """``nebras db seed``: insert the seed orders that are missing; returns how many were added."""
    store = store or OrderStore()
    return store.upsert_many(seed_rows(count))
