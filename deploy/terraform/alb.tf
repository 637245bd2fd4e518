# The load balancer in front of the tasks. It sends traffic only to tasks
# whose /health/ready answers 200: a task that cannot serve (or is draining
# after SIGTERM) leaves the rotation after two failed checks.
#
# One listener: HTTPS on 443 with certificate_arn, plain HTTP on 80
# without. No port-80 redirect comes with HTTPS: callers POST to /check,
# and a redirected POST is a lost check, so they must call https:// from
# the start.

resource "aws_lb" "this" {
  # checkov:skip=CKV2_AWS_20: with certificate_arn there is no HTTP listener at all; without one, plain HTTP is the choice of an internal ALB (the default) that only allowed_cidr_blocks reach, and a redirect would turn callers' POST /check into a lost check
  # checkov:skip=CKV_AWS_91: access logs go to var.access_logs_bucket when it is set; the bucket and its ELB policy belong to the account's logging, not to this module
  name                       = var.name
  internal                   = var.internal
  load_balancer_type         = "application"
  security_groups            = [aws_security_group.alb.id]
  subnets                    = var.alb_subnet_ids
  idle_timeout               = var.alb_idle_timeout
  drop_invalid_header_fields = true
  enable_deletion_protection = var.deletion_protection

  dynamic "access_logs" {
    for_each = var.access_logs_bucket == null ? [] : [var.access_logs_bucket]
    content {
      bucket  = access_logs.value
      prefix  = var.name
      enabled = true
    }
  }

  tags = var.tags
}

resource "aws_lb_target_group" "this" {
  # checkov:skip=CKV_AWS_378: the tasks serve plain HTTP (the service has no TLS listener); TLS ends at the ALB, and ALB-to-task traffic stays in the VPC between two security groups that admit only each other
  name                 = var.name
  port                 = var.container_port
  protocol             = "HTTP"
  target_type          = "ip"
  vpc_id               = var.vpc_id
  deregistration_delay = 15

  health_check {
    enabled             = true
    path                = local.health_path.ready
    port                = "traffic-port"
    protocol            = "HTTP"
    matcher             = "200"
    interval            = 5
    timeout             = 2
    healthy_threshold   = 2
    unhealthy_threshold = 2
  }

  tags = var.tags
}

resource "aws_lb_listener" "http" {
  # checkov:skip=CKV_AWS_103: exists only without certificate_arn, for an internal ALB reached from allowed_cidr_blocks; with a certificate the HTTPS listener (TLS 1.2 and 1.3) replaces it
  count = var.certificate_arn == null ? 1 : 0

  load_balancer_arn = aws_lb.this.arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.this.arn
  }

  tags = var.tags
}

resource "aws_lb_listener" "https" {
  count = var.certificate_arn == null ? 0 : 1

  load_balancer_arn = aws_lb.this.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.this.arn
  }

  tags = var.tags
}
