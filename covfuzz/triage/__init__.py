"""Triage: failure signatures (dedup), and later replay, repro and reduction."""
