# The shared counters: an ElastiCache Redis Cluster (cluster mode enabled:
# num_node_groups shards, each a master with replicas_per_node_group
# replicas and automatic failover). The service finds every node from the
# configuration endpoint and follows MOVED redirections after failovers and
# resharding.
#
# Traffic to the nodes is TLS (transit encryption) and needs an AUTH token:
# a random one, kept in Secrets Manager under the module's KMS key and
# handed to the tasks as RATELIMITER__STORE__REDIS__PASSWORD (main.tf). The
# nodes' certificates chain to public roots, so the service needs no CA
# file. Data at rest is encrypted with the same key.

resource "aws_elasticache_subnet_group" "this" {
  name       = "${var.name}-redis"
  subnet_ids = var.private_subnet_ids
  tags       = var.tags
}

# At most 128 printable characters without / " @ (ElastiCache's rule):
# letters and digits only.
resource "random_password" "redis_auth" {
  length  = 64
  special = false
}

resource "aws_secretsmanager_secret" "redis_auth" {
  # checkov:skip=CKV2_AWS_57: ECS reads the token only when a task starts and ElastiCache only learns a new one from this module, so a rotation Lambda would lock new tasks out; rotate with terraform apply -replace on random_password.redis_auth (deploy/README.md)
  name                    = "${var.name}/redis-auth-token"
  description             = "AUTH token of the ${var.name} Redis Cluster"
  kms_key_id              = aws_kms_key.this.arn
  recovery_window_in_days = 7
  tags                    = var.tags
}

resource "aws_secretsmanager_secret_version" "redis_auth" {
  secret_id     = aws_secretsmanager_secret.redis_auth.id
  secret_string = random_password.redis_auth.result
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
  kms_key_id                 = aws_kms_key.this.arn
  transit_encryption_enabled = true
  auth_token                 = random_password.redis_auth.result

  # Counters expire on their own and are rebuilt from zero; no snapshots.
  snapshot_retention_limit = 0
  apply_immediately        = true

  tags = var.tags
}

locals {
  redis_port = 6379
}
