"""Tests that each door of issue 11 stays closed (abuse, faults and bad input)."""
