"""Routes of this page (see the table in the web core's notes); filled in by its owner."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
