"""Batch files (txt, csv, jsonl) read into requests, every bad row named at once."""

from klingmon.batchfile._read import (
    REPORT_LIMIT,
    FileRow,
    read_batch_file,
    requests_from_text,
)

__all__ = ["REPORT_LIMIT", "FileRow", "read_batch_file", "requests_from_text"]
