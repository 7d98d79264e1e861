# The customer's root configuration: the module deploy/terraform/customer, run by the
# customer's Azure admin in their own tenant. Values in angle brackets are yours; the client id
# and display name are the ones the ISV publishes. Apply once, send outputs entra_tenant_id
# and key_url to the ISV, then apply again with the binding tag value it sends back.
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
    time = {
      source  = "hashicorp/time"
      version = ">= 0.12.0, < 1.0.0"
    }
  }
}

provider "azurerm" {
  subscription_id = "<your subscription id>"

  features {
    key_vault {
      # With purge protection a purge is refused anyway; never try.
      purge_soft_delete_on_destroy = false
      # A vault of this name deleted earlier is recovered rather than failing the apply.
      recover_soft_deleted_key_vaults = true
    }
  }
}

provider "azuread" {}

resource "azurerm_resource_group" "cmk" {
  name     = "fedbroker-cmk"
  location = "westeurope"
}

module "fedbroker_key" {
  source = "../../customer"

  isv_application_client_id    = "<ISV application client id>"
  isv_application_display_name = "<ISV application display name>"
  resource_group_name          = azurerm_resource_group.cmk.name
  location                     = azurerm_resource_group.cmk.location
  key_vault_name               = "contoso-fedbroker-kv"
  key_name                     = "fedbroker-cmk"
  # null until the ISV has registered the key's location and sent the value.
  binding_tag_value = null
}

output "entra_tenant_id" {
  description = "Send to the ISV."
  value       = module.fedbroker_key.entra_tenant_id
}

output "key_url" {
  description = "Send to the ISV."
  value       = module.fedbroker_key.key_url
}
