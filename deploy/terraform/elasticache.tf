# The shared counters: an ElastiCache Redis Cluster (cluster mode enabled:
# num_node_groups shards, each a master with replicas_per_node_group
# replicas and automatic failover). The service finds every node from the
# configuration endpoint and follows MOVED redirections after failovers and
# resharding.
#
# Transit encryption is off: the service speaks plain Redis protocol (no
# TLS client is built in), and ElastiCache's AUTH tokens need transit
# encryption, so the Redis security group (reachable from the tasks only)
# is what protects the nodes. Data at rest is encrypted.

resource "aws_elasticache_subnet_group" "this" {
  name       = "${var.name}-redis"
  subnet_ids = var.private_subnet_ids
  tags       = var.tags
}

resource "aws_elasticache_replication_group" "this" {
  replication_group_id = "${var.name}-redis"
  description          = "ratelimiter counters, overrides and lists"

  engine               = "redis"
  engine_version       = var.redis_engine_version
  node_type            = var.redis_node_type
  port                 = local.redis_port
  parameter_group_name = "default.redis7.cluster.on"

  num_node_groups            = var.redis_num_node_groups
  replicas_per_node_group    = var.redis_replicas_per_node_group
  automatic_failover_enabled = true
  multi_az_enabled           = true

  subnet_group_name  = aws_elasticache_subnet_group.this.name
  security_group_ids = [aws_security_group.redis.id]

  at_rest_encryption_enabled = true
  transit_encryption_enabled = false

  # Counters expire on their own and are rebuilt from zero; no snapshots.
  snapshot_retention_limit = 0
  apply_immediately        = true

  tags = var.tags
}

locals {
  redis_port = 6379
}
