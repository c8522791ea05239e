"""sgdexp."""
