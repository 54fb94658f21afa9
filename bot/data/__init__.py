"""Data files shipped with archbot (glossary, stopword lists)."""
