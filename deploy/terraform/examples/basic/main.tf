# Using the module: an internal ALB for the API servers of one VPC, the
# admin token generated and kept in Secrets Manager.
#
#   terraform init && terraform apply -var vpc_id=vpc-… \
#     -var 'private_subnet_ids=["subnet-…","subnet-…"]' \
#     -var image=123456789012.dkr.ecr.eu-west-1.amazonaws.com/ratelimiter:0.1.0

terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.0"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
  }
}

provider "aws" {
  region = var.region
}

variable "region" {
  type    = string
  default = "eu-west-1"
}

variable "vpc_id" {
  type = string
}

variable "private_subnet_ids" {
  type = list(string)
}

variable "image" {
  type = string
}

variable "api_cidr_blocks" {
  description = "Where the API servers that call /check run."
  type        = list(string)
  default     = ["10.0.0.0/16"]
}

# The token lands in the Terraform state too: keep the state encrypted, or
# create the secret outside Terraform and pass only its ARN. It is
# encrypted with the module's KMS key, which ECS may already decrypt with.
resource "random_password" "admin_token" {
  length  = 40
  special = false
}

resource "aws_secretsmanager_secret" "admin_token" {
  # checkov:skip=CKV2_AWS_57: ECS hands the token to a task when it starts, so a rotation Lambda would leave running tasks on the old token; rotate with terraform apply -replace on random_password.admin_token, then a new deployment of the service
  name                    = "ratelimiter/admin-token"
  kms_key_id              = module.ratelimiter.kms_key_arn
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "admin_token" {
  secret_id     = aws_secretsmanager_secret.admin_token.id
  secret_string = random_password.admin_token.result
}

module "ratelimiter" {
  source = "../.."

  name                   = "ratelimiter"
  vpc_id                 = var.vpc_id
  private_subnet_ids     = var.private_subnet_ids
  alb_subnet_ids         = var.private_subnet_ids
  allowed_cidr_blocks    = var.api_cidr_blocks
  image                  = var.image
  admin_token_secret_arn = aws_secretsmanager_secret.admin_token.arn

  desired_count = 3
  min_count     = 3
  max_count     = 12

  redis_num_node_groups         = 3
  redis_replicas_per_node_group = 1

  extra_environment = {
    RATELIMITER__LOG__LEVEL = "info"
  }

  tags = {
    service = "ratelimiter"
  }
}

output "url" {
  value = module.ratelimiter.url
}

output "redis_configuration_endpoint" {
  value = module.ratelimiter.redis_configuration_endpoint
}
