"""What can run here and what ran last: the one place backend questions are answered.

Every "is backend X usable on this device?" decision, and every record of which kernel
path the last call on this thread took (for tests that must prove coverage, and for
``python -m fastrnn``), lives in this module. Callers ask here; they do not re-derive it.
"""
from __future__ import annotations
