terraform {
  required_version = ">= 1.9.0, < 2.0.0"

  required_providers {
    # 3.x: client_id / application_id naming, azuread_application_registration and its parts.
    azuread = {
      source  = "hashicorp/azuread"
      version = ">= 3.0.2, < 4.0.0"
    }
    # 4.x; azurerm_federated_identity_credential with parent_id.
    azurerm = {
      source  = "hashicorp/azurerm"
      version = ">= 4.42.0, < 5.0.0"
    }
  }
}
