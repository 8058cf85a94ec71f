"""How much each section runs: the full sizes `make bench` uses, and the toy ones of `--smoke`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sizes:
    corpus_files: int
    chat_corpus_files: int
    chat_requests: dict[int, int]  # concurrency -> requests
    retrieval_chunks: int
    retrieval_queries: int
    coldstart_runs: int
    open_streams: int
    limiter_calls: int
    per_chunk_files: int
    cpu_streams: dict[int, int]  # concurrency -> requests per phase (bench/cpu.py)


FULL = Sizes(
    corpus_files=2000,
    chat_corpus_files=200,
    chat_requests={1: 30, 10: 100, 50: 250},
    retrieval_chunks=20_000,
    retrieval_queries=300,
    coldstart_runs=9,  # a noisy shared machine: the median of 9
    open_streams=200,
    limiter_calls=2000,
    per_chunk_files=100,
    cpu_streams={1: 8, 10: 40, 50: 150, 200: 400},
)
SMOKE = Sizes(
    corpus_files=30,
    chat_corpus_files=10,
    chat_requests={1: 3, 10: 10},
    retrieval_chunks=300,
    retrieval_queries=20,
    coldstart_runs=1,
    open_streams=10,
    limiter_calls=50,
    per_chunk_files=5,
    cpu_streams={1: 2, 10: 10},
)
