# The ISV's side of fedbroker (docs/deploy.md, "Terraform"):
#
# 1. the multi-tenant application customers consent to; its only credentials are federated
#    identity credentials, and it may manage those itself (Graph Application.ReadWrite.OwnedBy,
#    and its own service principal among its owners: docs/slots.md, "The first slot");
# 2. the admin API's application, with the app roles the admin API checks
#    (Sources/AdminAPI/AdminRole.swift) and Azure CLI pre-authorized for staff tokens;
# 3. one user-assigned managed identity per FIC slot, each with a FIC trusting every AKS
#    cluster's OIDC issuer and the broker's service account (workload identity);
# 4. the PostgreSQL Flexible Server and its database, private.
#
# Not here, on purpose: the application's FICs (identity -> application). They are the FIC
# slots, and `fedbroker slot add|rotate|retire` creates and deletes them through Graph as
# resumable jobs the store records; Terraform owning them would re-create a FIC the broker
# retired (trusting an identity it moved away from, and taking one of the 20) or delete one
# tenants are served through. The very first one is created once by hand: output
# bootstrap_fic has the command.
#
# The principal running this needs Application Administrator (both applications) and
# Privileged Role Administrator (to grant Graph's application permission) in the ISV's
# tenant, and Contributor plus Managed Identity Contributor on the resource group.

data "azuread_client_config" "current" {}

data "azuread_application_published_app_ids" "well_known" {}

data "azuread_service_principal" "msgraph" {
  client_id = data.azuread_application_published_app_ids.well_known.result["MicrosoftGraph"]
}

locals {
  isv_tenant_id = data.azuread_client_config.current.tenant_id

  # The admin API's app roles: exactly the values Sources/AdminAPI/AdminRole.swift checks.
  staff_roles = {
    "Tenants.Onboard" = "Register, validate and activate customers' keys, and change a key before activation."
    "Tenants.Suspend" = "Suspend, restore and offboard tenants."
    "Callers.Manage"  = "Add, change and remove the internal services that may call the broker."
    "Audit.Read"      = "Read the audit trail."
    "Slots.Operate"   = "Add, drain, retire and rotate FIC slots (SREs)."
  }
  # Stable ids, so a role keeps its id (and its assignments) across applies and re-creations.
  staff_role_ids  = { for role in keys(local.staff_roles) : role => uuidv5("url", "${var.admin_identifier_uri}/app-roles/${role}") }
  admin_scope_id  = uuidv5("url", "${var.admin_identifier_uri}/scopes/user_impersonation")
  owner_ids       = toset(concat([data.azuread_client_config.current.object_id], var.application_owner_object_ids))
  graph_owned_by  = data.azuread_service_principal.msgraph.app_role_ids["Application.ReadWrite.OwnedBy"]
  token_file      = "/var/run/secrets/azure/tokens/azure-identity-token"
  service_account = "system:serviceaccount:${var.kubernetes_namespace}:${var.kubernetes_service_account}"

  staff_assignments = {
    for pair in flatten([
      for role, principals in var.staff_role_assignments : [
        for principal in principals : { role = role, principal = principal }
      ]
    ]) : "${pair.role}/${pair.principal}" => pair
  }

  # Every (slot identity, cluster) pair gets one FIC on the identity.
  workload_identity_fics = {
    for pair in setproduct(var.slot_names, keys(var.aks_oidc_issuers)) :
    "${pair[0]}/${pair[1]}" => { slot = pair[0], cluster = pair[1] }
  }
}

# --- 1. The multi-tenant application ------------------------------------------------------------

resource "azuread_application_registration" "cmk" {
  display_name     = var.application_display_name
  description      = "Wraps and unwraps this organization's data keys with the key you keep in your own Azure Key Vault. Needs only \"Key Vault Crypto Service Encryption User\" on that one key."
  sign_in_audience = "AzureADMultipleOrgs"
}

resource "azuread_service_principal" "cmk" {
  client_id = azuread_application_registration.cmk.client_id
  owners    = local.owner_ids
}

# People who own the application besides the principal running Terraform (which needs
# Application Administrator, or is the owner already when it is a service principal that
# created the application: listing it here would then fail as "already exists").
resource "azuread_application_owner" "cmk_people" {
  for_each        = toset(var.application_owner_object_ids)
  application_id  = azuread_application_registration.cmk.id
  owner_object_id = each.value
}

# Application.ReadWrite.OwnedBy covers only applications the caller owns: the application's own
# service principal must be an owner, or `slot add` cannot create FICs.
resource "azuread_application_owner" "cmk_itself" {
  application_id  = azuread_application_registration.cmk.id
  owner_object_id = azuread_service_principal.cmk.object_id
}

resource "azuread_application_api_access" "cmk_graph" {
  application_id = azuread_application_registration.cmk.id
  api_client_id  = data.azuread_application_published_app_ids.well_known.result["MicrosoftGraph"]
  role_ids       = [local.graph_owned_by]
}

# The grant itself (admin consent in the ISV's tenant) for the permission requested above.
resource "azuread_app_role_assignment" "cmk_graph" {
  app_role_id         = local.graph_owned_by
  principal_object_id = azuread_service_principal.cmk.object_id
  resource_object_id  = data.azuread_service_principal.msgraph.object_id
}

# --- 2. The admin API's application ------------------------------------------------------------

resource "azuread_application" "admin" {
  display_name     = "${var.name_prefix}-admin"
  sign_in_audience = "AzureADMyOrg"
  identifier_uris  = [var.admin_identifier_uri]
  owners           = local.owner_ids

  api {
    # v2.0 access tokens: their aud is the client id, which admin.audiences lists too.
    requested_access_token_version = 2

    oauth2_permission_scope {
      id                         = local.admin_scope_id
      value                      = "user_impersonation"
      type                       = "User"
      enabled                    = true
      admin_consent_display_name = "Use the fedbroker admin API"
      admin_consent_description  = "Call the fedbroker admin API as the signed-in staff member, with that member's app roles."
      user_consent_display_name  = "Use the fedbroker admin API"
      user_consent_description   = "Call the fedbroker admin API as you, with your app roles."
    }
  }

  dynamic "app_role" {
    for_each = local.staff_roles
    content {
      id                   = local.staff_role_ids[app_role.key]
      value                = app_role.key
      display_name         = app_role.key
      description          = app_role.value
      allowed_member_types = ["User"]
      enabled              = true
    }
  }
}

resource "azuread_service_principal" "admin" {
  client_id = azuread_application.admin.client_id
  owners    = local.owner_ids
  # Only staff assigned a role get a token at all; the admin API refuses a token without one too.
  app_role_assignment_required = true
}

resource "azuread_application_pre_authorized" "admin" {
  for_each             = toset(var.admin_preauthorized_client_ids)
  application_id       = azuread_application.admin.id
  authorized_client_id = each.value
  permission_ids       = [local.admin_scope_id]
}

resource "azuread_app_role_assignment" "staff" {
  for_each            = local.staff_assignments
  app_role_id         = local.staff_role_ids[each.value.role]
  principal_object_id = each.value.principal
  resource_object_id  = azuread_service_principal.admin.object_id
}

# --- 3. The FIC slots' managed identities -------------------------------------------------------

resource "azurerm_user_assigned_identity" "slot" {
  for_each            = toset(var.slot_names)
  name                = "${var.name_prefix}-${each.key}"
  resource_group_name = var.resource_group_name
  location            = var.location
  tags                = var.tags
}

# Workload identity: the pod's projected service-account token is exchanged, as the identity's
# client assertion, for the identity's own token, which the application's FIC trusts
# (docs/slots.md, "Identities on every replica; workload identity"). One per cluster.
resource "azurerm_federated_identity_credential" "aks" {
  for_each            = local.workload_identity_fics
  name                = "${var.name_prefix}-aks-${each.value.cluster}"
  resource_group_name = var.resource_group_name
  parent_id           = azurerm_user_assigned_identity.slot[each.value.slot].id
  issuer              = var.aks_oidc_issuers[each.value.cluster]
  subject             = local.service_account
  audience            = ["api://AzureADTokenExchange"]
}

# --- 4. PostgreSQL --------------------------------------------------------------------------------

resource "azurerm_postgresql_flexible_server" "store" {
  name                          = var.postgres_server_name
  resource_group_name           = var.resource_group_name
  location                      = var.location
  version                       = var.postgres_version
  sku_name                      = var.postgres_sku_name
  storage_mb                    = var.postgres_storage_mb
  zone                          = var.postgres_zone
  delegated_subnet_id           = var.postgres_delegated_subnet_id
  private_dns_zone_id           = var.postgres_private_dns_zone_id
  public_network_access_enabled = false
  administrator_login           = var.postgres_administrator_login
  administrator_password        = var.postgres_administrator_password
  backup_retention_days         = var.postgres_backup_retention_days
  geo_redundant_backup_enabled  = var.postgres_geo_redundant_backup
  tags                          = var.tags

  # The broker authenticates with a password in its URL (store.databaseURL).
  authentication {
    password_auth_enabled         = true
    active_directory_auth_enabled = false
  }

  dynamic "high_availability" {
    for_each = var.postgres_standby_zone == null ? [] : [var.postgres_standby_zone]
    content {
      mode                      = "ZoneRedundant"
      standby_availability_zone = high_availability.value
    }
  }

  lifecycle {
    # The tenants, slots, callers and the audit trail live here.
    prevent_destroy = true
    # A failover swaps primary and standby zones; that is not drift.
    ignore_changes = [zone, high_availability[0].standby_availability_zone]
  }
}

resource "azurerm_postgresql_flexible_server_database" "fedbroker" {
  name      = "fedbroker"
  server_id = azurerm_postgresql_flexible_server.store.id
  charset   = "UTF8"
  collation = "en_US.utf8"

  lifecycle {
    prevent_destroy = true
  }
}

# TLS on every connection (the broker's default sslmode is verify-full anyway).
resource "azurerm_postgresql_flexible_server_configuration" "require_secure_transport" {
  name      = "require_secure_transport"
  server_id = azurerm_postgresql_flexible_server.store.id
  value     = "on"
}
