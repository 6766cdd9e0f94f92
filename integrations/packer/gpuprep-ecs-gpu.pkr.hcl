# An Amazon ECS / AWS Batch GPU image built on a GPU instance with gpuprep (amazon-ebs, HCL2).
#
#   make dist && packer init integrations/packer && packer build integrations/packer        (Packer 1.7+)
#   make dist && packer build integrations/packer/gpuprep-ecs-gpu.pkr.hcl                   (Packer 1.6)
#
# From any directory: paths are relative to this file (path.root), the wheelhouse defaults to the repository's
# dist/. plugins.pkr.hcl, beside this file, holds the `packer { required_plugins }` block current Packers need
# (`packer init` installs the amazon plugin it names); Packer 1.6, whose amazon builder is built in and which
# rejects that block (Debian's 1.6.6 validates this file in the tests), is given this file alone.
#
# The provisioners run, in this order (tests/system/test_fleet_pipelines.py runs the same lines and files in
# the same order in a simulated instance): upload the wheelhouse `make dist` builds and run its install.sh
# (gpuprep in /opt/gpuprep, linked as /usr/sbin/gpuprep; docs/packaging.md), then integrations/scripts/*.sh:
# `gpuprep install`, `gpuprep --json doctor` (the report downloaded into var.artifacts before anything can
# fail), stop on a critical verdict, and `gpuprep seal` last, so nothing runs on the image after it.
# A manifest post-processor writes var.artifacts/packer-manifest.json: the AMI id per region, for the pipeline's
# next step (`jq -r '.builds[-1].artifact_id'`).

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
  default     = ""
  description = "The wheelhouse folder `make dist` builds (its install.sh installs gpuprep offline), for the instance's python3; empty: the repository's dist/gpuprep-wheelhouse-py3.9."
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
  # A default relative to this file, not to the directory packer runs in (variables cannot name path.root).
  wheelhouse_src = var.wheelhouse != "" ? var.wheelhouse : "${path.root}/../../dist/gpuprep-wheelhouse-py3.9"
  # Where the wheelhouse lands on the instance (install.sh finds its wheels beside itself).
  wheelhouse = "/tmp/gpuprep-wheelhouse"
  as_root    = "chmod +x {{ .Path }}; sudo {{ .Vars }} {{ .Path }}"
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
    inline = ["mkdir -p ${local.wheelhouse}"]
  }

  provisioner "file" {
    source      = "${local.wheelhouse_src}/"
    destination = local.wheelhouse
  }

  # gpuprep's own installer, as the README's user-data runs it: /opt/gpuprep and /usr/sbin/gpuprep.
  provisioner "shell" {
    inline          = ["${local.wheelhouse}/install.sh"]
    execute_command = local.as_root
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

  post-processor "manifest" {
    output     = "${var.artifacts}/packer-manifest.json"
    strip_path = true
    custom_data = {
      doctor_report = "${var.artifacts}/gpuprep-doctor.json"
    }
  }
}
