"""llmfleet: recipes from the vendor guides, rendered and deployed with pyinfra."""

__version__ = "0.1.0"
