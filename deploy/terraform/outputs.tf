output "url" {
  description = "Base URL of the service behind the ALB (POST <url>/check)."
  value       = "${var.certificate_arn == null ? "http" : "https"}://${aws_lb.this.dns_name}"
}

output "alb_dns_name" {
  description = "DNS name of the load balancer."
  value       = aws_lb.this.dns_name
}

output "alb_zone_id" {
  description = "Hosted zone of the load balancer, for a Route 53 alias."
  value       = aws_lb.this.zone_id
}

output "ecs_cluster_name" {
  description = "The ECS cluster."
  value       = aws_ecs_cluster.this.name
}

output "ecs_service_name" {
  description = "The ECS service."
  value       = aws_ecs_service.this.name
}

output "log_group_name" {
  description = "CloudWatch log group of the tasks (one JSON object per line)."
  value       = aws_cloudwatch_log_group.this.name
}

output "task_security_group_id" {
  description = "Security group of the tasks (allow it wherever they must connect)."
  value       = aws_security_group.tasks.id
}

output "kms_key_arn" {
  description = "The module's KMS key (Redis AUTH token, Redis data, logs); encrypt the admin token secret with it to need no other key."
  value       = aws_kms_key.this.arn
}

output "redis_auth_secret_arn" {
  description = "The Secrets Manager secret holding the Redis AUTH token."
  value       = aws_secretsmanager_secret.redis_auth.arn
}

output "redis_configuration_endpoint" {
  description = "The Redis Cluster's configuration endpoint (host:port), the seed node the tasks use."
  value       = "${aws_elasticache_replication_group.this.configuration_endpoint_address}:${aws_elasticache_replication_group.this.port}"
}
