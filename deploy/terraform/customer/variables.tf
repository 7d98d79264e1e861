variable "isv_application_client_id" {
  type        = string
  description = "The ISV's multi-tenant application (client) id, as the ISV publishes it. Confirm it by a second channel: never trust an id that arrived only by email or chat."

  validation {
    condition     = can(regex("^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", var.isv_application_client_id))
    error_message = "isv_application_client_id must be a GUID."
  }
}

variable "isv_application_display_name" {
  type        = string
  default     = null
  nullable    = true
  description = "The display name the ISV publishes with the client id. When set, the apply fails unless the installed application carries exactly that name."
}

variable "resource_group_name" {
  type        = string
  description = "Resource group of the vault (it must exist)."
}

variable "location" {
  type        = string
  description = "Azure region of the vault."
}

variable "key_vault_name" {
  type        = string
  description = "Name of the new vault (globally unique, 3-24 characters). A vault used for this key only is simplest."
}

variable "key_name" {
  type        = string
  default     = "fedbroker-cmk"
  description = "Name of the key. It is fixed for good once the ISV activates it; new versions are fine."
}

variable "key_type" {
  type        = string
  default     = "RSA"
  description = "RSA (software-protected) or RSA-HSM (needs vault_sku premium)."

  validation {
    condition     = contains(["RSA", "RSA-HSM"], var.key_type)
    error_message = "key_type must be RSA or RSA-HSM."
  }
}

variable "key_size" {
  type        = number
  default     = 3072
  description = "RSA key size: 3072 or more (4096 halves the vault's transactions per 10 s)."

  validation {
    condition     = contains([3072, 4096], var.key_size)
    error_message = "key_size must be 3072 or 4096: smaller keys are refused."
  }
}

variable "vault_sku" {
  type        = string
  default     = "standard"
  description = "standard, or premium for an HSM-protected key."

  validation {
    condition     = contains(["standard", "premium"], var.vault_sku)
    error_message = "vault_sku must be standard or premium."
  }
}

variable "soft_delete_retention_days" {
  type        = number
  default     = 90
  description = "How long a deleted key can still be recovered (7-90 days; fixed at creation)."

  validation {
    condition     = var.soft_delete_retention_days >= 7 && var.soft_delete_retention_days <= 90
    error_message = "soft_delete_retention_days must be 7 to 90."
  }
}

variable "binding_tag_value" {
  type        = string
  default     = null
  nullable    = true
  description = "The fedbroker-binding tag value the ISV sent after registering the key's location (fbb-...). Leave null on the first apply if you do not have it yet, then apply again with it."

  validation {
    condition     = var.binding_tag_value == null || can(regex("^fbb-[A-Za-z0-9_-]+$", var.binding_tag_value))
    error_message = "binding_tag_value must be the fbb-... value the ISV sent."
  }
}

variable "network_allowed_ip_ranges" {
  type        = list(string)
  default     = []
  description = "When not empty, the vault's firewall denies by default and allows these ranges only: the ISV's outbound addresses (ask your contact) and wherever Terraform runs from. Empty: public access from anywhere, authorized by RBAC."
}

variable "grant_deployer_crypto_officer" {
  type        = bool
  default     = true
  description = "Give the principal running Terraform \"Key Vault Crypto Officer\" on the vault, which creating and tagging the key needs under RBAC. False if it already holds a role that allows it."
}

variable "rbac_propagation_wait" {
  type        = string
  default     = "120s"
  description = "How long to wait after granting Key Vault Crypto Officer before creating the key: role assignments take minutes to apply."
}

variable "log_analytics_workspace_id" {
  type        = string
  default     = null
  nullable    = true
  description = "Resource id of a Log Analytics workspace: when set, the vault's AuditEvent log (every wrap, unwrap and get the ISV makes) is sent there."
}

variable "tags" {
  type        = map(string)
  default     = {}
  description = "Tags on the vault and the key (the binding tag is added to the key's)."
}
