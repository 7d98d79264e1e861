# The ISV's root configuration: the module deploy/terraform/isv for one AKS cluster. Values in
# angle brackets are yours. After `terraform apply`:
#   - create the first slot's FIC once: output bootstrap_fic (docs/slots.md, "The first slot");
#   - merge output serve_config into deploy/kubernetes/base/serve.json, set the service
#     account's client-id annotation (workload_identity_client_id), and create the database
#     roles and the Secrets (docs/deploy.md).
terraform {
  required_version = ">= 1.9.0, < 2.0.0"

  required_providers {
    azuread = {
      source  = "hashicorp/azuread"
      version = ">= 3.0.2, < 4.0.0"
    }
    azurerm = {
      source  = "hashicorp/azurerm"
      version = ">= 4.42.0, < 5.0.0"
    }
  }
}

provider "azurerm" {
  features {}
  subscription_id = "<ISV subscription id>"
}

# Signs in to the ISV's tenant, where both applications and the staff live.
provider "azuread" {}

variable "postgres_administrator_password" {
  type        = string
  sensitive   = true
  description = "The PostgreSQL administrator's password (TF_VAR_postgres_administrator_password)."
}

data "azurerm_kubernetes_cluster" "prod" {
  name                = "<cluster name>"
  resource_group_name = "<cluster resource group>"
}

resource "azurerm_resource_group" "fedbroker" {
  name     = "fedbroker-prod"
  location = "westeurope"
}

module "fedbroker_isv" {
  source = "../../isv"

  resource_group_name      = azurerm_resource_group.fedbroker.name
  location                 = azurerm_resource_group.fedbroker.location
  application_display_name = "Fabrikam customer-managed keys"
  slot_names               = ["fic-1", "fic-2"]
  aks_oidc_issuers = {
    prod = data.azurerm_kubernetes_cluster.prod.oidc_issuer_url
  }
  staff_role_assignments = {
    "Tenants.Onboard" = ["<onboarding group object id>"]
    "Tenants.Suspend" = ["<onboarding leads group object id>"]
    "Callers.Manage"  = ["<platform group object id>"]
    "Audit.Read"      = ["<onboarding group object id>", "<security group object id>"]
    "Slots.Operate"   = ["<SRE group object id>"]
  }

  postgres_server_name            = "fabrikam-fedbroker-prod"
  postgres_delegated_subnet_id    = "<subnet id delegated to Microsoft.DBforPostgreSQL/flexibleServers>"
  postgres_private_dns_zone_id    = "<private DNS zone id, *.postgres.database.azure.com>"
  postgres_administrator_password = var.postgres_administrator_password

  tags = {
    service = "fedbroker"
  }
}

output "serve_config" {
  description = "Merge into serve.json."
  value       = module.fedbroker_isv.serve_config
}

output "workload_identity_client_id" {
  description = "The service account's azure.workload.identity/client-id annotation."
  value       = module.fedbroker_isv.workload_identity_client_id
}

output "bootstrap_fic" {
  description = "Write parameters to fic.json and run command, once."
  value       = module.fedbroker_isv.bootstrap_fic
}

output "postgres_host" {
  description = "Host of the database URLs."
  value       = module.fedbroker_isv.postgres_host
}
