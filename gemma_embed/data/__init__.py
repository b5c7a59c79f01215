"""Data: readers of the phases' inputs, the bundled sample's formats, the token store, batch orders, the collator."""
