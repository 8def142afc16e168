"""The audit archive: commands, results, events and refusals copied from Kafka into Delta tables."""
