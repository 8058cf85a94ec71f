"""The answer-quality benchmark (`make eval`): real documentation sets, questions, figures."""
