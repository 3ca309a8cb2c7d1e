"""construct stage: a persona's materials → personified SFT data (PersLLM-style).

ingest.py (sources → passages) → retrieve.py (stage-aware knowledge/style context) →
generate.py (question slots per pattern, CoT answering, judge requests) → filters.py
(every drop counted) → split.py (held-out split, rows, card) → pipeline.py (the stage
runner; the only module that writes files). Prompts live in kit/prompts/construct_*.j2.
"""
