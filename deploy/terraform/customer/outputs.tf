output "entra_tenant_id" {
  description = "The tenant that owns the vault: send it to the ISV (docs/customer-guide.md, step 6)."
  value       = azurerm_key_vault.cmk.tenant_id
}

output "key_url" {
  description = "The key's URL without a version: send it to the ISV."
  value       = azurerm_key_vault_key.cmk.versionless_id
}

output "vault_uri" {
  description = "The vault's URI."
  value       = azurerm_key_vault.cmk.vault_uri
}

output "key_name" {
  description = "The key's name."
  value       = azurerm_key_vault_key.cmk.name
}

output "service_principal_object_id" {
  description = "Object id of the ISV application's service principal in this tenant (role assignments use it)."
  value       = azuread_service_principal.isv.object_id
}

output "binding_tag_set" {
  description = "Whether the key carries the fedbroker-binding tag; the ISV's validation fails with BINDING_TAG_MISSING until it does."
  value       = var.binding_tag_value != null
}
