output "isv_tenant_id" {
  description = "The ISV's Entra tenant: azure.isvTenantID and admin.staffTenantID."
  value       = local.isv_tenant_id
}

output "application_client_id" {
  description = "The multi-tenant application (azure.appClientID). Publish it, with application_display_name, where customers can check it (docs/customer-guide.md)."
  value       = azuread_application_registration.cmk.client_id
}

output "application_object_id" {
  description = "The application's object id (slots.applicationObjectID)."
  value       = azuread_application_registration.cmk.object_id
}

output "application_display_name" {
  description = "What customers see when they consent (admin.applicationDisplayName)."
  value       = azuread_application_registration.cmk.display_name
}

output "admin_application_client_id" {
  description = "The admin API's application."
  value       = azuread_application.admin.client_id
}

output "admin_audiences" {
  description = "admin.audiences: the identifier URI and, for v2.0 tokens, the client id."
  value       = "${var.admin_identifier_uri},${azuread_application.admin.client_id}"
}

output "slot_identities" {
  description = "Slot name => the managed identity's client id, principal (object) id and resource id: what `fedbroker slot add --identity CLIENT_ID --principal-id OBJECT_ID` takes, and what a VM scale set attaches."
  value = {
    for name, identity in azurerm_user_assigned_identity.slot : name => {
      client_id    = identity.client_id
      principal_id = identity.principal_id
      id           = identity.id
    }
  }
}

output "workload_identity_client_id" {
  description = "The service account's azure.workload.identity/client-id annotation: the first slot's identity."
  value       = azurerm_user_assigned_identity.slot[var.slot_names[0]].client_id
}

output "slots_bootstrap" {
  description = "slots.bootstrap: the first slot's identity as clientId:principalId."
  value       = "${azurerm_user_assigned_identity.slot[var.slot_names[0]].client_id}:${azurerm_user_assigned_identity.slot[var.slot_names[0]].principal_id}"
}

output "slots_token_files" {
  description = "slots.tokenFiles for pods with workload identity: every slot identity's client id mapped to the projected token file."
  value       = join(",", [for name in var.slot_names : "${azurerm_user_assigned_identity.slot[name].client_id}=${local.token_file}"])
}

output "bootstrap_fic" {
  description = "The first slot's FIC on the application, created once, by hand, before the first start (docs/slots.md, \"The first slot\"). Every later FIC comes from `fedbroker slot add`."
  value = {
    parameters = {
      name      = var.slot_names[0]
      issuer    = "https://login.microsoftonline.com/${local.isv_tenant_id}/v2.0"
      subject   = azurerm_user_assigned_identity.slot[var.slot_names[0]].principal_id
      audiences = ["api://AzureADTokenExchange"]
    }
    command = "az ad app federated-credential create --id ${azuread_application_registration.cmk.client_id} --parameters fic.json"
  }
}

output "postgres_host" {
  description = "The PostgreSQL server's host name (private DNS); the host of store.databaseURL and of the migration Job's URL."
  value       = azurerm_postgresql_flexible_server.store.fqdn
}

output "postgres_database" {
  description = "The broker's database."
  value       = azurerm_postgresql_flexible_server_database.fedbroker.name
}

output "serve_config" {
  description = "The Azure part of serve.json (deploy/kubernetes/base/serve.json, deploy/systemd/serve.json), as JSON to merge in; slots.tokenFiles only when clusters are configured."
  value = jsonencode({
    azure = {
      appClientID = azuread_application_registration.cmk.client_id
      isvTenantID = local.isv_tenant_id
    }
    slots = merge(
      {
        bootstrap           = "${azurerm_user_assigned_identity.slot[var.slot_names[0]].client_id}:${azurerm_user_assigned_identity.slot[var.slot_names[0]].principal_id}"
        applicationObjectID = azuread_application_registration.cmk.object_id
      },
      length(var.aks_oidc_issuers) == 0 ? {} : {
        tokenFiles = join(",", [for name in var.slot_names : "${azurerm_user_assigned_identity.slot[name].client_id}=${local.token_file}"])
      }
    )
    admin = {
      staffTenantID          = local.isv_tenant_id
      audiences              = "${var.admin_identifier_uri},${azuread_application.admin.client_id}"
      applicationDisplayName = azuread_application_registration.cmk.display_name
    }
  })
}
