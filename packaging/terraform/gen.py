#!/usr/bin/env python3
"""Writes the Terraform modules as .tf.json (Terraform's JSON syntax), so the build can at least
check their structure without a terraform binary (none is installable here: HashiCorp's
releases are not reachable and Debian does not package it). Run after editing."""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def write(path, doc):
    with open(os.path.join(HERE, path), "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")


def var(t, d=None, desc=""):
    v = {"type": t, "description": desc}
    if d is not None:
        v["default"] = d
    return v


write("modules/networking/main.tf.json", {
    "//": "A VPC with private subnets for the nodes and the database, public ones for load balancers.",
    "variable": {
        "name": var("string", "sentinel", "Name prefix"),
        "cidr": var("string", "10.40.0.0/16", "VPC CIDR"),
        "azs": var("list(string)", ["us-east-1a", "us-east-1b"], "Availability zones"),
    },
    "resource": {
        "aws_vpc": {"this": {"cidr_block": "${var.cidr}", "enable_dns_hostnames": True,
                             "tags": {"Name": "${var.name}"}}},
        "aws_subnet": {
            "private": {"count": "${length(var.azs)}", "vpc_id": "${aws_vpc.this.id}",
                        "availability_zone": "${var.azs[count.index]}",
                        "cidr_block": "${cidrsubnet(var.cidr, 4, count.index)}",
                        "tags": {"Name": "${var.name}-private-${count.index}",
                                 "kubernetes.io/role/internal-elb": "1"}},
            "public": {"count": "${length(var.azs)}", "vpc_id": "${aws_vpc.this.id}",
                       "availability_zone": "${var.azs[count.index]}",
                       "cidr_block": "${cidrsubnet(var.cidr, 4, count.index + 8)}",
                       "map_public_ip_on_launch": False,
                       "tags": {"Name": "${var.name}-public-${count.index}",
                                "kubernetes.io/role/elb": "1"}},
        },
    },
    "output": {
        "vpc_id": {"value": "${aws_vpc.this.id}"},
        "private_subnet_ids": {"value": "${aws_subnet.private[*].id}"},
        "public_subnet_ids": {"value": "${aws_subnet.public[*].id}"},
    },
})

write("modules/eks/main.tf.json", {
    "//": "EKS: Spot nodes for the stateless workers (sentineld instances sharing PostgreSQL), on-demand nodes for stateful parts.",
    "variable": {
        "name": var("string", "sentinel", "Cluster name"),
        "subnet_ids": var("list(string)", None, "Private subnets"),
        "cluster_role_arn": var("string", None, "IAM role of the control plane"),
        "node_role_arn": var("string", None, "IAM role of the nodes"),
        "version": var("string", "1.30", "Kubernetes version"),
    },
    "resource": {
        "aws_eks_cluster": {"this": {
            "name": "${var.name}", "role_arn": "${var.cluster_role_arn}", "version": "${var.version}",
            "vpc_config": {"subnet_ids": "${var.subnet_ids}", "endpoint_public_access": False,
                           "endpoint_private_access": True}}},
        "aws_eks_node_group": {
            "stateless_spot": {
                "cluster_name": "${aws_eks_cluster.this.name}", "node_group_name": "stateless-spot",
                "node_role_arn": "${var.node_role_arn}", "subnet_ids": "${var.subnet_ids}",
                "capacity_type": "SPOT", "instance_types": ["m6i.large", "m5.large", "m6a.large"],
                "scaling_config": {"desired_size": 2, "min_size": 2, "max_size": 6},
                "labels": {"sentinel.dev/workload": "stateless"}},
            "stateful_on_demand": {
                "cluster_name": "${aws_eks_cluster.this.name}", "node_group_name": "stateful",
                "node_role_arn": "${var.node_role_arn}", "subnet_ids": "${var.subnet_ids}",
                "capacity_type": "ON_DEMAND", "instance_types": ["m6i.large"],
                "scaling_config": {"desired_size": 1, "min_size": 1, "max_size": 3},
                "labels": {"sentinel.dev/workload": "stateful"},
                "taint": [{"key": "sentinel.dev/stateful", "value": "true",
                           "effect": "NO_SCHEDULE"}]},
        },
    },
    "output": {"cluster_name": {"value": "${aws_eks_cluster.this.name}"},
               "endpoint": {"value": "${aws_eks_cluster.this.endpoint}"}},
})

write("modules/rds/main.tf.json", {
    "//": "PostgreSQL for stores/postgres: private, encrypted, Multi-AZ, password from Secrets Manager.",
    "variable": {
        "name": var("string", "sentinel", "Identifier"),
        "subnet_ids": var("list(string)", None, "Private subnets"),
        "vpc_security_group_ids": var("list(string)", None, "Who may connect (the EKS nodes)"),
        "instance_class": var("string", "db.t4g.medium", "Instance class"),
    },
    "resource": {
        "aws_db_subnet_group": {"this": {"name": "${var.name}", "subnet_ids": "${var.subnet_ids}"}},
        "aws_db_instance": {"this": {
            "identifier": "${var.name}", "engine": "postgres", "engine_version": "15",
            "instance_class": "${var.instance_class}", "allocated_storage": 50,
            "storage_encrypted": True, "multi_az": True, "publicly_accessible": False,
            "db_name": "sentinel", "username": "sentinel",
            "manage_master_user_password": True,
            "db_subnet_group_name": "${aws_db_subnet_group.this.name}",
            "vpc_security_group_ids": "${var.vpc_security_group_ids}",
            "backup_retention_period": 14, "deletion_protection": True,
            "skip_final_snapshot": False, "final_snapshot_identifier": "${var.name}-final"}},
    },
    "output": {"endpoint": {"value": "${aws_db_instance.this.endpoint}"},
               "master_secret_arn": {"value": "${aws_db_instance.this.master_user_secret[0].secret_arn}"}},
})

write("main.tf.json", {
    "//": "Sentinel on AWS: networking, EKS (Spot for stateless, on-demand for stateful), RDS PostgreSQL, and the least-privilege role the aws executor assumes.",
    "terraform": {"required_version": ">= 1.5",
                  "required_providers": {"aws": {"source": "hashicorp/aws", "version": "~> 5.0"}}},
    "variable": {
        "region": var("string", "us-east-1", "Region"),
        "cluster_role_arn": var("string", None, "EKS control-plane role"),
        "node_role_arn": var("string", None, "EKS node role"),
        "db_security_group_ids": var("list(string)", None, "Security groups allowed to reach the database"),
    },
    "provider": {"aws": {"region": "${var.region}"}},
    "module": {
        "networking": {"source": "./modules/networking"},
        "eks": {"source": "./modules/eks", "subnet_ids": "${module.networking.private_subnet_ids}",
                "cluster_role_arn": "${var.cluster_role_arn}", "node_role_arn": "${var.node_role_arn}"},
        "rds": {"source": "./modules/rds", "subnet_ids": "${module.networking.private_subnet_ids}",
                "vpc_security_group_ids": "${var.db_security_group_ids}"},
        "executor_iam": {"source": "./modules/iam", "regions": ["${var.region}"]},
    },
    "output": {"cluster": {"value": "${module.eks.cluster_name}"},
               "database": {"value": "${module.rds.endpoint}"}},
})
