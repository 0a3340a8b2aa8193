"""Does a program behave like a model? Judges for extraction, `rasp verify`, and the round trip
that compiles an extracted program back to weights."""
