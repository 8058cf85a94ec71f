"""The comparison: LlamaIndex's default offline pipeline on the same pages and questions.

Runs in its own venv (see requirements-baseline.txt), so it imports nothing from Docent. Reads
`{"pages": {id: path}, "questions": [{"id", "question"}], "top_k": n}` on stdin and writes
`{"ingest_s", "nodes", "results": [{"id", "pages": [...], "latency_s"}]}` to stdout.

The pipeline is the one LlamaIndex documents for BM25: documents read by SimpleDirectoryReader's
loader, split into nodes by its HTML parser (`HTMLNodeParser`, default tags), and
`BM25Retriever.from_defaults` with the English stemmer.
"""

from __future__ import annotations

import json
import sys
import time


def main() -> None:
    job = json.load(sys.stdin)
    started = time.perf_counter()
    import Stemmer
    from llama_index.core import SimpleDirectoryReader
    from llama_index.core.node_parser import HTMLNodeParser
    from llama_index.retrievers.bm25 import BM25Retriever

    by_path = {path: page for page, path in job["pages"].items()}
    reader = SimpleDirectoryReader(input_files=sorted(by_path), filename_as_id=True)
    documents = reader.load_data()
    for document in documents:
        document.metadata["page"] = by_path[document.metadata["file_path"]]
    nodes = HTMLNodeParser().get_nodes_from_documents(documents)
    retriever = BM25Retriever.from_defaults(
        nodes=nodes,
        similarity_top_k=job["top_k"],
        stemmer=Stemmer.Stemmer("english"),
        language="english",
    )
    ingest_s = time.perf_counter() - started
    results = []
    for question in job["questions"]:
        began = time.perf_counter()
        found = retriever.retrieve(question["question"])
        latency = time.perf_counter() - began
        results.append(
            {
                "id": question["id"],
                "pages": [n.node.metadata["page"] for n in found],
                "latency_s": latency,
            }
        )
    json.dump({"ingest_s": ingest_s, "nodes": len(nodes), "results": results}, sys.stdout)


if __name__ == "__main__":
    main()
