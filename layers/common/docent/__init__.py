"""Docent: a RAG backend for "chat with my docs" bots."""

__version__ = "0.1.0"
