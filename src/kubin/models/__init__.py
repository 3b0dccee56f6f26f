"""Model families, their registry, and the manager that keeps one loaded."""
