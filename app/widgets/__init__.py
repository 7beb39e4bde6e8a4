"""Reusable widgets with no business rules: charts, highlighters, copyable fields."""
