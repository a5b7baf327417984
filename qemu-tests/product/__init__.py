"""The product under test: the real fleet image, signed releases and an Overlord on the host."""
