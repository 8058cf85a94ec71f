#!/bin/sh
# Streaming chat on Lambda: the Lambda Web Adapter (the layer, started through
# AWS_LAMBDA_EXEC_WRAPPER=/opt/bootstrap) forwards each invocation to this uvicorn server and,
# with AWS_LWA_INVOKE_MODE=response_stream, streams the response back through the function URL
# as it is written. Readiness: the adapter polls /health before the first request.
# --no-proxy-headers: the client IP comes from the adapter's x-amzn-request-context header.
PATH="/var/lang/bin:$PATH"
export PYTHONPATH="/opt/python:${LAMBDA_TASK_ROOT:-.}:$PYTHONPATH"
exec python -m uvicorn --app-dir "${LAMBDA_TASK_ROOT:-.}" app:app \
    --host 127.0.0.1 --port "${PORT:-8000}" --no-proxy-headers --log-level warning \
    --timeout-keep-alive 75
