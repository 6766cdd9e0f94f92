# An Amazon ECS / AWS Batch GPU image built on a GPU instance with gpuprep (amazon-ebs, HCL2).
#
#   packer build -var wheelhouse=dist/wheelhouse integrations/packer/gpuprep-ecs-gpu.pkr.hcl
#
# The provisioners run integrations/scripts/*.sh, in this order, and tests/system/test_fleet_pipelines.py runs
# the same files in the same order in a simulated instance: upload the wheelhouse, install gpuprep from it,
# `gpuprep install`, `gpuprep --json doctor` (the report downloaded into var.artifacts before anything can
# fail), stop on a critical verdict, and `gpuprep seal` last, so nothing runs on the image after it.
#
# No `packer { required_plugins {...} }` block: Debian's packer 1.6.6, which validates this file in the tests,
# rejects it, and the amazon builder is built into 1.6. Newer packers want `packer plugins install
# github.com/hashicorp/amazon` (or the block) first.

variable "region" {
  type    = string
  default = "us-east-1"
}

variable "instance_type" {
  type        = string
  default     = "g5.xlarge"
  description = "A GPU instance type: gpuprep's gpu-check proves a container sees its GPUs."
}

variable "source_ami_name" {
  type        = string
  default     = "al2023-ami-ecs-gpu-hvm-2023.0.*-kernel-6.1-x86_64"
  description = "Amazon's ECS GPU-optimized AMI for AL2023 (driver installed); the newest match is used."
}

variable "ssh_username" {
  type    = string
  default = "ec2-user"
}

variable "wheelhouse" {
  type        = string
  default     = "dist/wheelhouse"
  description = "A directory of wheels with gpuprep's and its dependencies' (make dist)."
}

variable "install_args" {
  type        = string
  default     = ""
  description = "More `gpuprep install` arguments, space-separated (say --repo-file PATH)."
}

variable "seal_args" {
  type        = string
  default     = ""
  description = "More `gpuprep seal` arguments (say --keep-image REF, so the boot check's container probe can run)."
}

variable "doctor_args" {
  type        = string
  default     = ""
  description = "More `gpuprep doctor` arguments (say --image REF, the image the container check runs)."
}

variable "artifacts" {
  type        = string
  default     = "artifacts"
  description = "Where the doctor report of the build instance is downloaded to."
}

variable "skip_credential_validation" {
  type        = bool
  default     = false
  description = "true lets `packer validate` run with no AWS credentials (the tests do)."
}

locals {
  stamp   = regex_replace(timestamp(), "[- TZ:]", "")
  scripts = "${path.root}/../scripts"
  # sudo's secure_path on AL2023 lacks /usr/local/bin: the scripts name gpuprep by its full path.
  as_root = "chmod +x {{ .Path }}; sudo {{ .Vars }} {{ .Path }}"
}

source "amazon-ebs" "gpu" {
  region                     = var.region
  instance_type              = var.instance_type
  ssh_username               = var.ssh_username
  ami_name                   = "gpuprep-ecs-gpu-${local.stamp}"
  ami_description            = "ECS / AWS Batch GPU container host prepared and sealed by gpuprep"
  skip_credential_validation = var.skip_credential_validation

  source_ami_filter {
    filters = {
      name                = var.source_ami_name
      virtualization-type = "hvm"
      root-device-type    = "ebs"
    }
    owners      = ["amazon"]
    most_recent = true
  }

  tags = {
    Name       = "gpuprep-ecs-gpu-${local.stamp}"
    BuiltWith  = "gpuprep"
    SourceAMI  = "{{ .SourceAMI }}"
    SourceName = "{{ .SourceAMIName }}"
  }
}

build {
  sources = ["source.amazon-ebs.gpu"]

  provisioner "shell" {
    inline = ["mkdir -p /tmp/gpuprep-wheelhouse"]
  }

  provisioner "file" {
    source      = "${var.wheelhouse}/"
    destination = "/tmp/gpuprep-wheelhouse"
  }

  provisioner "shell" {
    script           = "${local.scripts}/install-wheelhouse.sh"
    execute_command  = local.as_root
    environment_vars = ["GPUPREP_WHEELHOUSE=/tmp/gpuprep-wheelhouse"]
  }

  provisioner "shell" {
    script           = "${local.scripts}/build-install.sh"
    execute_command  = local.as_root
    environment_vars = ["GPUPREP_INSTALL_ARGS=${var.install_args}"]
  }

  provisioner "shell" {
    script           = "${local.scripts}/build-doctor.sh"
    execute_command  = local.as_root
    environment_vars = ["GPUPREP_DOCTOR_ARGS=${var.doctor_args}", "GPUPREP_DOCTOR_JSON=/tmp/gpuprep-doctor.json"]
  }

  provisioner "file" {
    direction   = "download"
    source      = "/tmp/gpuprep-doctor.json"
    destination = "${var.artifacts}/gpuprep-doctor.json"
  }

  provisioner "shell" {
    script           = "${local.scripts}/build-verdict.sh"
    execute_command  = local.as_root
    environment_vars = ["GPUPREP_DOCTOR_JSON=/tmp/gpuprep-doctor.json"]
  }

  provisioner "shell" {
    script           = "${local.scripts}/build-seal.sh"
    execute_command  = local.as_root
    environment_vars = ["GPUPREP_SEAL_ARGS=${var.seal_args}", "GPUPREP_DOCTOR_JSON=/tmp/gpuprep-doctor.json"]
  }
}
