"""One module per architecture family; each exposes its constructors and `CARDS`."""
