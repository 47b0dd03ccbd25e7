"""What the actions tell the customer. Plain functions of stored records (no Rasa types)."""
from __future__ import annotations

from typing import Optional

from nebras_bot.support import orders as o
from nebras_bot.support.orders import Order
from nebras_bot.support.tickets import STATUS_RESOLVED, Ticket

_STATUS_TEXT = {
    o.PROCESSING: "is being prepared and has not shipped yet",
    o.SHIPPED: "has shipped",
    o.DELIVERED: "was delivered",
    o.CANCELLED: "was cancelled",
    o.RETURNED: "was returned",
}
_REFUND_TEXT = {
    o.REFUND_PENDING: "is pending: we are processing it",
    o.REFUND_APPROVED: "was approved and will be paid to your original payment method within 5 business days",
    o.REFUND_PAID: "has been paid to your original payment method",
    o.REFUND_REJECTED: "was declined after review; reply here if you would like an agent to take another look",
}


def _money(order: Order, amount=None) -> str:
    return f"{amount if amount is not None else order.total:.2f} {order.currency}"


def unknown_order(order_id: Optional[str]) -> str:
    if not order_id:
        return "I couldn't read an order number there. Could you give me the number from your confirmation email?"
    return (f"I couldn't find an order with the number {order_id}. Please check the number in your confirmation "
            "email, or I can open a support ticket for you.")


def order_status(order: Order) -> str:
    text = f"Order {order.order_id} {_STATUS_TEXT.get(order.status, 'is ' + order.status)}"
    if order.status == o.SHIPPED:
        text += f" with {order.carrier} (tracking {order.tracking_number})"
        if order.estimated_delivery:
            text += f" and should arrive in {order.delivery_city} by {order.estimated_delivery:%d %B %Y}"
    elif order.status == o.PROCESSING and order.estimated_delivery:
        text += f"; the estimated delivery date is {order.estimated_delivery:%d %B %Y}"
    elif order.status == o.DELIVERED:
        text += f" to {order.delivery_city}, {order.delivery_country}"
    return text + "."


def cancel_result(outcome: str, order: Optional[Order], order_id: Optional[str]) -> str:
    if outcome == o.CANCEL_NOT_FOUND or order is None:
        return unknown_order(order_id)
    if outcome == o.CANCEL_DONE:
        return (f"Order {order.order_id} is cancelled. A refund of {_money(order)} will go back to your original "
                "payment method; you'll get a confirmation email shortly.")
    if outcome == o.CANCEL_ALREADY:
        return f"Order {order.order_id} was already cancelled. Its refund {_REFUND_TEXT.get(order.refund_status, 'is being processed')}."
    text = f"Order {order.order_id} {_STATUS_TEXT.get(order.status, 'is ' + order.status)}, so it can no longer be cancelled."
    if order.status == o.SHIPPED:
        return text + " You can return it once it arrives; I can open a ticket if you need help with that."
    if order.status == o.DELIVERED:
        return text + " You can still return it; I can open a ticket to start the return."
    return text


def refund_status(order: Order) -> str:
    if not order.refund_status:
        return (f"Order {order.order_id} {_STATUS_TEXT.get(order.status, 'is ' + order.status)} and has no refund "
                "on it. If you expected one, I can open a support ticket.")
    amount = _money(order, order.refund_amount)
    return f"The refund of {amount} for order {order.order_id} {_REFUND_TEXT.get(order.refund_status, order.refund_status)}."


def ticket_created(ticket: Ticket) -> str:
    contact = f" We'll reply to {ticket.email}." if ticket.email else ""
    return f"I've opened support ticket {ticket.id}.{contact} Keep the number to check on it later."


def ticket_status(ticket: Optional[Ticket], ticket_id: Optional[str]) -> str:
    if ticket is None:
        if not ticket_id:
            return "Please give me your ticket number; it looks like TCK-AB12CD34."
        return f"I couldn't find a ticket with the number {ticket_id}. Please check it; it looks like TCK-AB12CD34."
    if ticket.status == STATUS_RESOLVED:
        return f"Ticket {ticket.id} is resolved. Our agent's answer: {ticket.resolution}"
    return f"Ticket {ticket.id} is open; our team is working on it and will get back to you."


def handoff(ticket: Ticket) -> str:
    return (f"I'm handing you over to a human agent. I've opened ticket {ticket.id} with our conversation so far, "
            "so you won't need to repeat yourself. An agent will continue here shortly.")


def handoff_failed() -> str:
    return ("I'm sorry, I couldn't reach our support system just now. Your request is saved and an agent will "
            "contact you as soon as possible.")


def ticket_failed() -> str:
    return ("I'm sorry, I couldn't save your ticket just now. Your request is kept and will be filed as soon as "
            "our system is back; please try asking for its status a little later.")


def feedback_thanks(rating: str) -> str:
    if rating == "down":
        return "Thanks for telling me. I've noted that this answer didn't help, and we'll use it to improve."
    return "Thanks for the feedback, glad that helped!"


def feedback_nothing_to_rate() -> str:
    return "Thanks! There was no earlier answer of mine to rate yet."
