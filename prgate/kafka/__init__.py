"""The Kafka runtime the project runs locally: its Maven pom, log config and provisioning."""
