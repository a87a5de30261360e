"""Service configuration: renderers (pure) and the atomic, validated apply."""
