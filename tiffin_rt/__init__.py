"""tiffin_rt: PostgreSQL changes to Socket.IO and Server-Sent Events, live."""

__version__ = "0.1.0"
