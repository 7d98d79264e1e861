variable "resource_group_name" {
  type        = string
  description = "Resource group for the managed identities and the PostgreSQL server (it must exist)."
}

variable "location" {
  type        = string
  description = "Azure region of the managed identities and the PostgreSQL server."
}

variable "name_prefix" {
  type        = string
  default     = "fedbroker"
  description = "Prefix of resource names: identities are <prefix>-<slot>, the admin application <prefix>-admin."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.name_prefix))
    error_message = "name_prefix must be 2-31 lower-case letters, digits or dashes, starting with a letter."
  }
}

variable "application_display_name" {
  type        = string
  default     = "fedbroker"
  description = "Display name of the multi-tenant application, as customers' admins see it when they consent (admin.applicationDisplayName). Publish it with the client id."
}

variable "application_owner_object_ids" {
  type        = list(string)
  default     = []
  description = "Object ids of people (SREs) who own both applications besides the principal running Terraform."
}

variable "admin_identifier_uri" {
  type        = string
  default     = "api://fedbroker-admin"
  description = "Application ID URI of the admin API (the first of admin.audiences; what `az account get-access-token --resource` names)."
}

variable "admin_preauthorized_client_ids" {
  type        = list(string)
  default     = ["04b07795-8ddb-461a-bbee-02f9e1bf7b46"]
  description = "Client applications allowed to ask for admin API tokens without a consent prompt. The default is Azure CLI, which staff use (docs/onboarding.md, \"Before you start\")."
}

variable "staff_role_assignments" {
  type        = map(list(string))
  default     = {}
  description = "Admin API app role => object ids of the users or (better) groups that hold it. Roles: Tenants.Onboard, Tenants.Suspend, Callers.Manage, Audit.Read, Slots.Operate."

  validation {
    condition = alltrue([
      for role in keys(var.staff_role_assignments) :
      contains(["Tenants.Onboard", "Tenants.Suspend", "Callers.Manage", "Audit.Read", "Slots.Operate"], role)
    ])
    error_message = "staff_role_assignments keys must be roles the admin API checks: Tenants.Onboard, Tenants.Suspend, Callers.Manage, Audit.Read, Slots.Operate."
  }
}

variable "slot_names" {
  type        = list(string)
  default     = ["fic-1", "fic-2"]
  description = "One user-assigned managed identity per FIC slot, in order; the first is the bootstrap slot. Add a name before `fedbroker slot add`/`rotate` for a new identity; remove one only after its slot is retired."

  validation {
    condition     = length(var.slot_names) >= 1 && length(var.slot_names) <= 20 && alltrue([for n in var.slot_names : can(regex("^[A-Za-z0-9_-]{3,120}$", n))])
    error_message = "slot_names: 1 to 20 names of 3-120 characters from [A-Za-z0-9_-] (Entra allows 20 FICs per application)."
  }
}

variable "aks_oidc_issuers" {
  type        = map(string)
  default     = {}
  description = "Cluster label => AKS OIDC issuer URL (oidc_issuer_url) of every cluster the broker runs on with workload identity. Each slot identity gets a FIC trusting each. Empty on VMs, which use IMDS."

  validation {
    condition     = alltrue([for label, issuer in var.aks_oidc_issuers : can(regex("^[A-Za-z0-9_-]{1,60}$", label)) && startswith(issuer, "https://")])
    error_message = "aks_oidc_issuers: labels of letters, digits, - and _ (they name the FICs), issuers https:// URLs."
  }
}

variable "kubernetes_namespace" {
  type        = string
  default     = "fedbroker"
  description = "Namespace of the broker's service account (deploy/kubernetes)."
}

variable "kubernetes_service_account" {
  type        = string
  default     = "fedbroker"
  description = "Name of the broker's service account (deploy/kubernetes/base/serviceaccount.yaml)."
}

variable "postgres_server_name" {
  type        = string
  description = "Name of the PostgreSQL Flexible Server (globally unique: it is the host name's first label)."
}

variable "postgres_version" {
  type        = string
  default     = "16"
  description = "PostgreSQL major version."
}

variable "postgres_sku_name" {
  type        = string
  default     = "GP_Standard_D2ds_v5"
  description = "Compute of the server. The broker writes one audit row per key operation, 500 to a statement (docs/operations.md, \"The audit journal\", PostgreSQL write rate)."
}

variable "postgres_storage_mb" {
  type        = number
  default     = 131072
  description = "Storage of the server in MiB; the audit trail is the table that grows (about 300 bytes a key operation with its indexes)."
}

variable "postgres_zone" {
  type        = string
  default     = "1"
  description = "Availability zone of the primary."
}

variable "postgres_standby_zone" {
  type        = string
  default     = "2"
  nullable    = true
  description = "Availability zone of the zone-redundant standby; null for no high availability."
}

variable "postgres_backup_retention_days" {
  type        = number
  default     = 35
  description = "Point-in-time restore window (7-35 days)."
}

variable "postgres_geo_redundant_backup" {
  type        = bool
  default     = false
  description = "Geo-redundant backups (set at creation only)."
}

variable "postgres_delegated_subnet_id" {
  type        = string
  description = "Subnet delegated to Microsoft.DBforPostgreSQL/flexibleServers: the server has no public endpoint. Its CIDR goes into the NetworkPolicies' PostgreSQL rule."
}

variable "postgres_private_dns_zone_id" {
  type        = string
  description = "Private DNS zone (*.postgres.database.azure.com) linked to the cluster's VNet, so the server's name resolves and sslmode=verify-full checks it."
}

variable "postgres_administrator_login" {
  type        = string
  default     = "fedbroker_admin"
  description = "The server administrator, used once to create the roles fedbroker_owner and fedbroker_app (docs/deploy.md, \"Database roles\"); never by the broker."
}

variable "postgres_administrator_password" {
  type        = string
  sensitive   = true
  description = "The administrator's password. It ends up in the Terraform state: keep the state encrypted and access-controlled."
}

variable "tags" {
  type        = map(string)
  default     = {}
  description = "Tags on every Azure resource."
}
