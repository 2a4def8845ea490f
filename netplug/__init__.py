"""netplug: container networking for Linux — CNI plugins, NAT explainer, classroom labs."""

__version__ = "0.1.0"
