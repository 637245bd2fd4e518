# ratelimiter on ECS Fargate behind an ALB, with its counters in an
# ElastiCache Redis Cluster. The container is the repository's Dockerfile;
# its settings come from the environment (RATELIMITER__SECTION__KEY) over
# the configuration file baked into the image (config/ratelimiter.toml, the
# rules). See deploy/README.md.

data "aws_region" "current" {}

locals {
  container_name = "ratelimiter"

  # The service's settings, one RATELIMITER__SECTION__KEY variable each
  # (the README's configuration reference). The admin token and the Redis
  # AUTH token are secrets, below, never plain variables. rediss:// is TLS.
  environment = {
    RATELIMITER__SERVER__LISTEN           = "0.0.0.0:${var.container_port}"
    RATELIMITER__SERVER__DRAIN_GRACE      = var.drain_grace
    RATELIMITER__SERVER__SHUTDOWN_TIMEOUT = var.shutdown_timeout
    RATELIMITER__SERVER__READ_TIMEOUT     = var.read_timeout
    RATELIMITER__LOG__FORMAT              = "json"
    RATELIMITER__STORE__BACKEND           = "redis"
    RATELIMITER__STORE__FAILURE_MODE      = var.failure_mode
    RATELIMITER__STORE__LOCAL_DIVISOR     = var.desired_count
    RATELIMITER__STORE__REDIS__MODE       = "cluster"
    RATELIMITER__STORE__REDIS__NODES      = "rediss://${aws_elasticache_replication_group.this.configuration_endpoint_address}:${aws_elasticache_replication_group.this.port}"
  }

  health_path = {
    live  = "/health/live"
    ready = "/health/ready"
  }
}

resource "aws_ecs_cluster" "this" {
  name = var.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }

  tags = var.tags
}

resource "aws_cloudwatch_log_group" "this" {
  name              = "/ecs/${var.name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this.arn
  tags              = var.tags
}

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

# Used by ECS to pull the image, write logs and read the two secrets.
resource "aws_iam_role" "execution" {
  name               = "${var.name}-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

# The admin token and the Redis AUTH token, and the keys they are
# encrypted with (the module's, and the admin token's own if it has one).
data "aws_iam_policy_document" "read_secrets" {
  statement {
    sid       = "ReadTheSecrets"
    actions   = ["secretsmanager:GetSecretValue", "ssm:GetParameters"]
    resources = [var.admin_token_secret_arn, aws_secretsmanager_secret.redis_auth.arn]
  }

  statement {
    sid       = "DecryptTheSecrets"
    actions   = ["kms:Decrypt"]
    resources = compact([aws_kms_key.this.arn, var.admin_token_kms_key_arn])
  }
}

resource "aws_iam_role_policy" "read_secrets" {
  name   = "read-secrets"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.read_secrets.json
}

# The service itself calls no AWS API.
resource "aws_iam_role" "task" {
  name               = "${var.name}-task"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = var.tags
}

resource "aws_ecs_task_definition" "this" {
  family                   = var.name
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.task_cpu
  memory                   = var.task_memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }

  container_definitions = jsonencode([
    {
      name                   = local.container_name
      image                  = var.image
      essential              = true
      command                = ["serve"]
      user                   = "10001:10001"
      readonlyRootFilesystem = true
      stopTimeout            = var.stop_timeout

      portMappings = [
        {
          name          = "http"
          containerPort = var.container_port
          protocol      = "tcp"
        }
      ]

      environment = [
        for key, value in merge(local.environment, var.extra_environment) : {
          name  = key
          value = tostring(value)
        }
      ]

      secrets = [
        {
          name      = "RATELIMITER__ADMIN__TOKEN"
          valueFrom = var.admin_token_secret_arn
        },
        {
          name      = "RATELIMITER__STORE__REDIS__PASSWORD"
          valueFrom = aws_secretsmanager_secret.redis_auth.arn
        }
      ]

      # Restarts a task whose process stopped serving; the ALB's own check
      # (readiness) decides which tasks get traffic.
      healthCheck = {
        command     = ["CMD", "/usr/local/bin/ratelimiter", "health", "--url", "http://127.0.0.1:${var.container_port}"]
        interval    = 10
        timeout     = 2
        retries     = 3
        startPeriod = 10
      }

      ulimits = [
        {
          name      = "nofile"
          softLimit = 65536
          hardLimit = 65536
        }
      ]

      logConfiguration = {
        logDriver = "awslogs"
        options = {
          "awslogs-group"         = aws_cloudwatch_log_group.this.name
          "awslogs-region"        = data.aws_region.current.name
          "awslogs-stream-prefix" = local.container_name
        }
      }
    }
  ])

  tags = var.tags
}

resource "aws_ecs_service" "this" {
  name                              = var.name
  cluster                           = aws_ecs_cluster.this.id
  task_definition                   = aws_ecs_task_definition.this.arn
  desired_count                     = var.desired_count
  launch_type                       = "FARGATE"
  health_check_grace_period_seconds = 30

  # Rolling deployments never go below the desired count.
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [aws_security_group.tasks.id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.this.arn
    container_name   = local.container_name
    container_port   = var.container_port
  }

  # Autoscaling owns the count after creation.
  lifecycle {
    ignore_changes = [desired_count]
  }

  depends_on = [
    aws_lb_listener.http,
    aws_lb_listener.https,
    aws_vpc_security_group_ingress_rule.redis_from_tasks,
    aws_secretsmanager_secret_version.redis_auth,
    aws_iam_role_policy.read_secrets,
  ]
  tags       = var.tags
}

resource "aws_appautoscaling_target" "this" {
  service_namespace  = "ecs"
  resource_id        = "service/${aws_ecs_cluster.this.name}/${aws_ecs_service.this.name}"
  scalable_dimension = "ecs:service:DesiredCount"
  min_capacity       = var.min_count
  max_capacity       = var.max_count
}

resource "aws_appautoscaling_policy" "cpu" {
  name               = "${var.name}-cpu"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.this.service_namespace
  resource_id        = aws_appautoscaling_target.this.resource_id
  scalable_dimension = aws_appautoscaling_target.this.scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = var.cpu_target_percent
    scale_in_cooldown  = 300
    scale_out_cooldown = 60

    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
  }
}
