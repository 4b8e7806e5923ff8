"""Doorstep's Python SDK: technician, customer and operator clients for the hub.

They talk to the hub over the wire only (WebSocket + HTTP) and share nothing with it but
the protocol module's message structs (``realtime.protocol``)::

    from clients import TechnicianClient, CustomerClient, OperatorClient
"""

from clients._client import TokenProvider
from clients._connection import Backoff
from clients._sos import SosReceipt
from clients.customer import CustomerClient
from clients.errors import (
    AuthError,
    DoorstepError,
    HubUnavailable,
    NotConnectedError,
    NotFoundError,
    RequestError,
    SosNotDelivered,
)
from clients.operator import OperatorClient
from clients.seqstore import FileSeqStore, MemorySeqStore, SeqStore
from clients.technician import BufferStats, TechnicianClient

__all__ = [
    "AuthError",
    "Backoff",
    "BufferStats",
    "CustomerClient",
    "DoorstepError",
    "FileSeqStore",
    "HubUnavailable",
    "MemorySeqStore",
    "NotConnectedError",
    "NotFoundError",
    "OperatorClient",
    "RequestError",
    "SeqStore",
    "SosNotDelivered",
    "SosReceipt",
    "TechnicianClient",
    "TokenProvider",
]
