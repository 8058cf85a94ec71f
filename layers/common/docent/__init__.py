"""Docent: a RAG backend for "chat with my docs" bots.

The public surface is the modules below (docs/architecture.md draws how they fit together);
each is imported on use, so importing the package itself loads nothing else. The development
tools (`cli`, `gateway`, `qdrantstandin`) are not part of it: the Lambda layer leaves them out.
"""

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "anchors",
    "auth",
    "aws",
    "backup",
    "chat",
    "chunking",
    "config",
    "corpus",
    "display",
    "edge",
    "embeddings",
    "errors",
    "generation",
    "health",
    "ingest",
    "insights",
    "kv",
    "limits",
    "llm",
    "logs",
    "mcp_server",
    "mcp_tools",
    "metrics",
    "modelclient",
    "openai_api",
    "parsing",
    "qdrant",
    "redisstore",
    "retrieval",
    "sentences",
    "services",
    "serving",
    "sites",
    "snapstart",
    "sparse",
    "sse",
    "tokens",
    "upstash",
    "values",
    "vectors",
    "web",
]
