"""Kafka plumbing on top of the kernel: the topic catalog, Avro serde, the publisher SDK
and HTTP gateway, consumers with a dead-letter topic, client security and admin."""
