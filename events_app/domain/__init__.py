"""Business rules as plain async functions, grouped by capability. No web framework here."""
