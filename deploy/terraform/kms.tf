# One customer-managed key for what the module keeps at rest: the Redis
# AUTH token in Secrets Manager, the Redis nodes' data and the tasks' log
# group. The account's IAM policies decide who may use it (the first
# statement, as for a key AWS manages); CloudWatch Logs may use it for this
# module's log group only.

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

data "aws_iam_policy_document" "kms" {
  # This document is the key's own policy, where a resource of "*" means
  # this key and nothing else, and the account root principal hands the
  # decision to IAM policies (the statement every AWS-managed key has).
  # checkov:skip=CKV_AWS_109: a key policy: "*" is this key alone; IAM policies of the account decide who manages it
  # checkov:skip=CKV_AWS_111: a key policy: "*" is this key alone; IAM policies of the account decide who writes with it
  # checkov:skip=CKV_AWS_356: a key policy: "*" is this key alone, the only resource a key policy can name
  statement {
    sid       = "AccountIAMPolicies"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }

  statement {
    sid       = "CloudWatchLogsOfTheTasks"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["logs.${data.aws_region.current.name}.amazonaws.com"]
    }

    condition {
      test     = "ArnEquals"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${data.aws_partition.current.partition}:logs:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:log-group:/ecs/${var.name}"]
    }
  }
}

resource "aws_kms_key" "this" {
  description             = "${var.name}: Redis AUTH token, Redis data at rest, task logs"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
  tags                    = var.tags
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.this.key_id
}
