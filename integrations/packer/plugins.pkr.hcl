# The plugins gpuprep-ecs-gpu.pkr.hcl needs, for Packer 1.7 and newer: `packer init integrations/packer` installs
# them, then `packer build integrations/packer` reads both files. Packer 1.6 (Debian 12's 1.6.6) has the amazon
# builder built in and rejects this block: give it the template file alone (gpuprep-ecs-gpu.pkr.hcl's header).
packer {
  required_version = ">= 1.6.6"
  required_plugins {
    amazon = {
      version = ">= 1.2.0"
      source  = "github.com/hashicorp/amazon"
    }
  }
}
