# The customer's side of fedbroker, for the customer's Azure admin to run in their own tenant
# and subscription: docs/customer-guide.md, steps 1 to 5, as code.
#
#   1. the ISV application's service principal (admin consent, no Graph permissions);
#   2. a vault with purge protection and Azure RBAC;
#   3. an RSA key (3072 bits or more) allowed to wrapKey and unwrapKey only;
#   4. "Key Vault Crypto Service Encryption User" for that service principal on the key alone;
#   5. the fedbroker-binding tag on the key, once the ISV has sent its value.
#
# The principal running this needs Cloud Application Administrator (or Application
# Administrator) in the tenant, and Owner or User Access Administrator plus Key Vault
# Contributor on the resource group.

data "azurerm_client_config" "current" {}

# 1. Installing the ISV's application creates its service principal in this tenant.
resource "azuread_service_principal" "isv" {
  client_id    = var.isv_application_client_id
  use_existing = true

  lifecycle {
    postcondition {
      condition     = var.isv_application_display_name == null || self.display_name == var.isv_application_display_name
      error_message = "The application ${var.isv_application_client_id} is called \"${self.display_name}\", not the name the ISV publishes. Stop and check the client id with your contact."
    }
  }
}

# 2. The vault.
resource "azurerm_key_vault" "cmk" {
  name                = var.key_vault_name
  location            = var.location
  resource_group_name = var.resource_group_name
  tenant_id           = data.azurerm_client_config.current.tenant_id
  sku_name            = var.vault_sku

  # Deleted keys stay recoverable for the retention period and can never be purged early:
  # the ISV refuses keys without it (PURGE_PROTECTION_OFF). It cannot be turned off.
  purge_protection_enabled   = true
  soft_delete_retention_days = var.soft_delete_retention_days
  # One role on one key, instead of access policies that cover the whole vault.
  rbac_authorization_enabled = true
  # The ISV reaches the vault over its public endpoint; private endpoints alone do not work.
  public_network_access_enabled = true

  network_acls {
    bypass         = "None"
    default_action = length(var.network_allowed_ip_ranges) == 0 ? "Allow" : "Deny"
    ip_rules       = var.network_allowed_ip_ranges
  }

  tags = var.tags

  lifecycle {
    prevent_destroy = true
  }
}

resource "azurerm_role_assignment" "deployer_crypto_officer" {
  count                = var.grant_deployer_crypto_officer ? 1 : 0
  scope                = azurerm_key_vault.cmk.id
  role_definition_name = "Key Vault Crypto Officer"
  principal_id         = data.azurerm_client_config.current.object_id
  description          = "Terraform creates and tags the fedbroker key"
}

resource "time_sleep" "rbac_propagation" {
  create_duration = var.grant_deployer_crypto_officer ? var.rbac_propagation_wait : "0s"
  depends_on      = [azurerm_role_assignment.deployer_crypto_officer]
}

# 3. The key, and 5. its binding tag. A change of binding_tag_value updates the tag in place
# on the current version; a new version made outside Terraform (rotation) is tagged again at
# the next apply.
resource "azurerm_key_vault_key" "cmk" {
  name         = var.key_name
  key_vault_id = azurerm_key_vault.cmk.id
  key_type     = var.key_type
  key_size     = var.key_size
  # Wrapping only: even a broader role later cannot make it sign or decrypt.
  key_opts = ["wrapKey", "unwrapKey"]
  tags     = merge(var.tags, var.binding_tag_value == null ? {} : { "fedbroker-binding" = var.binding_tag_value })

  depends_on = [time_sleep.rbac_propagation]

  lifecycle {
    # Deleting the key makes every piece of data protected by it unreadable, for good once the
    # retention period has passed. Disable it (or remove the role) to revoke instead.
    prevent_destroy = true

    precondition {
      condition     = var.key_type != "RSA-HSM" || var.vault_sku == "premium"
      error_message = "An RSA-HSM key needs vault_sku = \"premium\"."
    }
  }
}

# 4. The ISV's application may read the key's metadata and wrap and unwrap with it; nothing
# else, on nothing else. Scoped to the key (every version), not the vault.
resource "azurerm_role_assignment" "isv_wrap_unwrap" {
  scope                = azurerm_key_vault_key.cmk.resource_versionless_id
  role_definition_name = "Key Vault Crypto Service Encryption User"
  principal_id         = azuread_service_principal.isv.object_id
  principal_type       = "ServicePrincipal"
  # The service principal may be minutes old: skip the directory lookup that can fail then.
  skip_service_principal_aad_check = true
  description                      = "fedbroker: wrap and unwrap with this key only"
}

# Optional: Key Vault logs data-plane use (wrap, unwrap, get) only with a diagnostic setting.
resource "azurerm_monitor_diagnostic_setting" "vault_audit" {
  count                      = var.log_analytics_workspace_id == null ? 0 : 1
  name                       = "fedbroker-key-audit"
  target_resource_id         = azurerm_key_vault.cmk.id
  log_analytics_workspace_id = var.log_analytics_workspace_id

  enabled_log {
    category = "AuditEvent"
  }
}
