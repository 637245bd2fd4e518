variable "name" {
  description = "Name of every resource (ECS cluster and service, ALB, target group, Redis replication group); at most 28 characters."
  type        = string
  default     = "ratelimiter"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,27}$", var.name))
    error_message = "name must be lowercase letters, digits and hyphens, start with a letter, at most 28 characters."
  }
}

variable "vpc_id" {
  description = "The VPC to run in."
  type        = string
}

variable "private_subnet_ids" {
  description = "Subnets of the tasks and of the Redis nodes (at least two availability zones). They need a route to ECR and CloudWatch Logs (NAT gateway or VPC endpoints)."
  type        = list(string)
}

variable "alb_subnet_ids" {
  description = "Subnets of the load balancer: private ones for an internal ALB (the default), public ones otherwise."
  type        = list(string)
}

variable "internal" {
  description = "Whether the ALB is internal (reachable inside the VPC only). API servers call the service from inside; keep it internal unless you know why not."
  type        = bool
  default     = true
}

variable "allowed_cidr_blocks" {
  description = "Networks allowed to reach the ALB listener (your API servers)."
  type        = list(string)
}

variable "certificate_arn" {
  description = "ACM certificate for an HTTPS listener on 443 (TLS 1.2 and 1.3); null for plain HTTP on 80."
  type        = string
  default     = null
}

variable "deletion_protection" {
  description = "Whether the ALB refuses to be deleted (set false before terraform destroy)."
  type        = bool
  default     = true
}

variable "access_logs_bucket" {
  description = "S3 bucket for the ALB's access logs (its policy must let the region's load balancers write); null for none."
  type        = string
  default     = null
}

variable "image" {
  description = "The container image built from the repository's Dockerfile, e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com/ratelimiter:0.1.0."
  type        = string
}

variable "admin_token_secret_arn" {
  description = "ARN of a Secrets Manager secret (plain string) or of an SSM SecureString parameter holding the admin API token (at least 16 characters). Injected as RATELIMITER__ADMIN__TOKEN; never written to the task definition."
  type        = string
}

variable "admin_token_kms_key_arn" {
  description = "The customer-managed KMS key the admin token is encrypted with, if it is neither the AWS-managed one nor this module's (output kms_key_arn); ECS may then decrypt with it."
  type        = string
  default     = null
}

variable "container_port" {
  description = "Port of the service's listener in the task (server.listen)."
  type        = number
  default     = 8080
}

variable "task_cpu" {
  description = "Fargate task CPU units (256 = 0.25 vCPU)."
  type        = number
  default     = 512
}

variable "task_memory" {
  description = "Fargate task memory in MiB."
  type        = number
  default     = 1024
}

variable "cpu_architecture" {
  description = "X86_64 or ARM64, matching the image."
  type        = string
  default     = "X86_64"
}

variable "desired_count" {
  description = "Tasks at creation, and the store.local_divisor each replica uses in the `local` failure mode."
  type        = number
  default     = 3
}

variable "min_count" {
  description = "Autoscaling lower bound."
  type        = number
  default     = 3
}

variable "max_count" {
  description = "Autoscaling upper bound."
  type        = number
  default     = 12
}

variable "cpu_target_percent" {
  description = "Average CPU utilisation the service autoscaling keeps the tasks at."
  type        = number
  default     = 60
}

variable "drain_grace" {
  description = "server.drain_grace: after SIGTERM, how long /health/ready answers 503 while checks are still served."
  type        = string
  default     = "5s"
}

variable "shutdown_timeout" {
  description = "server.shutdown_timeout: then, how long in-flight requests may take."
  type        = string
  default     = "10s"
}

variable "stop_timeout" {
  description = "Seconds ECS waits after SIGTERM before SIGKILL (at most 120 on Fargate); more than drain_grace + shutdown_timeout."
  type        = number
  default     = 30
}

variable "alb_idle_timeout" {
  description = "Seconds the ALB keeps idle connections, to clients and to the tasks."
  type        = number
  default     = 60
}

variable "read_timeout" {
  description = "server.read_timeout. Longer than alb_idle_timeout, so a task never closes a keep-alive connection the ALB is about to reuse (which the ALB would answer with a 502)."
  type        = string
  default     = "65s"
}

variable "failure_mode" {
  description = "store.failure_mode: what checks get while Redis cannot decide (open, closed or local)."
  type        = string
  default     = "local"

  validation {
    condition     = contains(["open", "closed", "local"], var.failure_mode)
    error_message = "failure_mode must be open, closed or local."
  }
}

variable "extra_environment" {
  description = "More RATELIMITER__SECTION__KEY settings for the container, e.g. { RATELIMITER__LOG__LEVEL = \"debug\" }."
  type        = map(string)
  default     = {}
}

variable "log_retention_days" {
  description = "Retention of the CloudWatch log group, in days (one of CloudWatch's values)."
  type        = number
  default     = 365
}

variable "redis_node_type" {
  description = "ElastiCache node type."
  type        = string
  default     = "cache.t4g.small"
}

variable "redis_engine_version" {
  description = "Redis engine version (7.x)."
  type        = string
  default     = "7.1"
}

variable "redis_num_node_groups" {
  description = "Shards (masters) of the Redis Cluster."
  type        = number
  default     = 3

  validation {
    condition     = var.redis_num_node_groups >= 2
    error_message = "redis_num_node_groups must be at least 2: this module runs Redis in cluster mode."
  }
}

variable "redis_replicas_per_node_group" {
  description = "Replicas of each shard, promoted when their master fails."
  type        = number
  default     = 1

  validation {
    condition     = var.redis_replicas_per_node_group >= 1
    error_message = "redis_replicas_per_node_group must be at least 1, for automatic failover."
  }
}

variable "tags" {
  description = "Tags of every resource."
  type        = map(string)
  default     = {}
}
