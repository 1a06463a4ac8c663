"""`make chaos`: fault injection against the real processes, counting what every subscriber received."""
